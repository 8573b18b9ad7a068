"""The image-generation studio's API (shared/seeds/003): synchronous generate routes, the
history under integer ids, the caller's defaults (/api/settings) and /ws/generation."""
