"""Serving the agent over HTTP: the app (:mod:`.app`), what it loads once (:mod:`.state`), the web page
(``static/``)."""
