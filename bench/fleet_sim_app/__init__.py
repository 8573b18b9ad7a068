"""bench/fleet_sim.py's worker side: the real settings and worker, with text-to-image's
pipeline call replaced by a sleep (a simulated GPU)."""
