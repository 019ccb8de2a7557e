"""The web ground station (``magpie web``): live channels, plots, events, commands, images, map.

:mod:`ground.web.filters` holds the live-view filters the CLI tails share; :mod:`ground.web.app`
is the ASGI application (Starlette) served by uvicorn; the page itself is plain HTML, JS and CSS
in ``static/``, shipped in the package, so it works with no network at all.
"""
