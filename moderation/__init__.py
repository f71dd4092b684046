"""Self-hosted multimodal harmful-content moderation.

Data flows one way: config -> data -> encoders -> fusion head -> train -> eval -> serve.
Heavy libraries (torch, transformers, ray) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
