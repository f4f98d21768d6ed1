"""The HTTP/SSE API the viewer reads; build it with `api.app.create_app`."""
