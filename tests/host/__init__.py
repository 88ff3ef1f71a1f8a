"""A host project's page that is not ours: its own base.html, its own strict CSP, no
django-htmx middleware, and the batch panel through the page contract alone (tests/test_page_contract.py,
e2e/test_page_contract.py)."""
