"""The Flask shell: the app factory and one blueprint per surface."""
