"""Who may do what: admin-key authentication and role rules (operator sign-in joins in issue 6)."""
