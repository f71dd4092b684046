"""Self-hosted multimodal harmful-content moderation.

    from moderation import Moderator
    Moderator().predict(["have a lovely day"])     # {category: [score]}

Data flows one way: config -> data -> encoders -> fusion head -> model -> train -> eval -> serve.
Heavy libraries (torch, transformers, ray) are imported only when used: `Moderator` is loaded on first access,
so `moderation --help` stays instant.
"""

__version__ = "0.1.0"
__all__ = ["Moderator", "ModeratedPost", "Action", "Reason", "Thresholds", "Sampling", "decide"]


def __getattr__(name: str):
    if name in ("Moderator", "ModeratedPost"):
        from moderation import moderator

        return getattr(moderator, name)
    if name in ("Action", "Reason", "Thresholds", "Sampling", "decide"):
        from moderation import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'moderation' has no attribute {name!r}")
