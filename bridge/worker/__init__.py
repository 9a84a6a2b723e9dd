"""The worker shell: one loop that claims due work and hands each job to its handler."""
