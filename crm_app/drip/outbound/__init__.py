"""Outbound webhooks: events written with the changes they report (events.py), the
endpoints admins register (endpoints.py), who may be called (addresses.py), one
signed attempt (sending.py), the sweep, redeliveries and the log (deliveries.py)."""
