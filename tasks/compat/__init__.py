"""The routes and shapes of the API documents Back.Serv serves besides its own /api/v1
(shared/seeds 000 Back.Serv, 003 studio, 004 distributed system): thin layers over tasks.services and the
selectors, each with its own serializers and error body, and no state of its own."""
