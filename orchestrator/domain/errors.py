"""One exception hierarchy for the orchestrator, with structured fields."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error this project raises on purpose."""


class ValidationFailed(OrchestratorError):
    """Input was refused; nothing was started or written.

    Attributes:
        source: Where the input came from (a file name, ``signal``, ``flags``).
        problems: One ``(location, message)`` pair per problem, location like ``accounts[3].id``.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {loc}: {msg}" if loc else f"  {msg}" for loc, msg in problems)
        super().__init__(f"{source}: invalid input\n{lines}")


class InvalidOrderTransition(OrchestratorError):
    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"order cannot move from {current} to {target}")


class BrokerUnavailable(OrchestratorError):
    """A transient broker fault (timeout, disconnect, busy): retry with the same order id."""


class DuplicateSignal(OrchestratorError):
    def __init__(self, signal_id: str) -> None:
        self.signal_id = signal_id
        super().__init__(f"signal {signal_id!r} was already submitted; nothing new started")


class SystemHalted(OrchestratorError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"HALTED: trading is halted ({reason}); nothing started")


class OpenReservations(OrchestratorError):
    """Accounts' live state cannot be replaced while legs of theirs hold risk reservations.

    Attributes:
        legs: ``(account id, signal id)`` of each open reservation.
    """

    def __init__(self, legs: list[tuple[str, str]]) -> None:
        self.legs = legs
        listed = ", ".join(f"{account} (signal {signal})" for account, signal in legs)
        super().__init__(
            f"not replacing any state: {len(legs)} leg(s) still hold risk reservations: "
            f"{listed}; replace the state once they have settled"
        )
