"""The REST API's core: tokens, Idempotency-Key answers, the contact calls the pages
do not make (upsert by email, partial update, keyset lists). No Flask request in here."""
