"""Experiments and personalisation: A/B variants (variants.py), content blocks
(blocks.py), "send only if" conditions (conditions.py) and exit goals (goals.py), on
one rule language over contact fields (rules.py)."""
