"""Web layer shared by the portal pages: landing page, layout helpers."""
