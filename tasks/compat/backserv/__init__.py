"""Back.Serv's original API (shared/seeds/000): /submit_task, /query_task, /cancel_task."""
