"""The native admin JSON API under ``/api``: shared plumbing (errors, transactions, pagination) and the
router that gathers each domain's controller."""
