"""The web console the gateway serves at ``/ui`` (docs/console.md): its read model
(``data``, ``evolve``), live feeds (``live``), rendering (``render``), templates and static
files. The routes are ``services/gateway/routes/ui.py`` and ``ui_stream.py``."""
