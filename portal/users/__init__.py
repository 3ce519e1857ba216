"""People: operators and tenant members, their memberships."""
