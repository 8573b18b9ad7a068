"""The distributed task-processing system's API (shared/seeds/004): /api/task, /api/servers,
/api/stats, with JWTs, epoch-millisecond times, camelCase names and its error body."""
