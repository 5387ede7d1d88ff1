"""The embedded paper broker, its book in our database: the behaviour model and the broker."""

from orchestrator.adapters.brokers.paper.config import PaperBehaviour, PaperFill
from orchestrator.adapters.brokers.paper.execution import PaperBroker

__all__ = ["PaperBehaviour", "PaperBroker", "PaperFill"]
