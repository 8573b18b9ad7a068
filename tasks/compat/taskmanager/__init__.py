"""The GPU task-manager API (shared/seeds/002): its routes are Back.Serv's /api/v1, which
also takes its names for a submit (task_name, args, kwargs) and its task names."""
