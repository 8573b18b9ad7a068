"""The API documents Back.Serv serves besides its own /api/v1 (shared/seeds), one package
each: backserv (000), taskmanager (002), studio (003), distributed (004). Each holds its
routes, serializers, error body and names, as thin layers over tasks.services and the
selectors. Only the URLconf (urls, and routing for the ASGI router) imports them; where
a document changes what the core does, it registers into the core's hook from its
AppConfig.ready() (tasks.api.dialects). renaming and waiting serve them all."""
