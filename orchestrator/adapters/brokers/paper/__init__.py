"""The embedded paper broker, its book in our database: the behaviour model, the market and the
broker."""

from orchestrator.adapters.brokers.paper.config import PaperBehaviour, PaperFill
from orchestrator.adapters.brokers.paper.execution import PaperBroker
from orchestrator.adapters.brokers.paper.market import PaperMarket

__all__ = ["PaperBehaviour", "PaperBroker", "PaperFill", "PaperMarket"]
