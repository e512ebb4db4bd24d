"""One router per resource of the API (``/v1/...``) and the review page."""
