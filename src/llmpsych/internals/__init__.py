"""What a model represents: trait vectors from contrasting instructions, projections on them, and steering
(the hooks themselves live with the engine, in models/steering.py)."""
