"""The value check: re-derive the plan (and every reroute's sizes) from the inputs the history
recorded with the current code, compare every recorded value; and what each account's orders
add up to beside its report line.

Replay proves the current code issues the same *sequence* of commands; it does not compare
their values (a changed order quantity replays clean). So the audit also re-derives the plan
from the inputs the history recorded (the signal and settings the workflow started with, the
snapshot and correlation results, the workflow time it planned at) with the current planning
code, and compares every recorded quantity, delay and client order id with it. The history
records which planning rules made the plan (a ``planning-rules-vN`` marker): under other
rules than the current code's, a difference is an intended change of rules, not drift, and
the values are not compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from orchestrator.domain import paging, planning
from orchestrator.domain.book import BookSnapshot, spec_key
from orchestrator.domain.contracts.payloads import (
    CancelOrderRequest,
    LegBatchInput,
    PlaceOrderRequest,
    RerouteInput,
    ReserveRiskRequest,
    SignalWorkflowInput,
)
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.planning.decisions import Plan, PlannedLeg
from orchestrator.domain.report import RerouteResult, SignalReport
from orchestrator.domain.settings import ServiceSettings
from orchestrator.services.audit.document import (
    AccountAudit,
    Difference,
    OrderTrail,
    Read,
    ValueCheck,
    ValueVerdict,
)

Values = tuple[tuple[str, object, object], ...]
"""(field, recorded, derived) triples."""


class Comparison:
    """Recorded values against the re-derived plan's legs, differences collected."""

    def __init__(self, legs: dict[str, PlannedLeg]) -> None:
        self.legs = legs
        self.differences: list[Difference] = []
        self.compared = 0

    def leg(self, account: str, where: str, recorded: object) -> PlannedLeg | None:
        """The derived leg of ``account``; a recorded value for an account the plan gives no
        leg is itself a difference."""
        leg = self.legs.get(account)
        if leg is None:
            self.values(account, where, (("leg", recorded, "no leg for this account"),))
        return leg

    def values(self, account: str, where: str, values: Values) -> None:
        for name, recorded, derived in values:
            self.compared += 1
            if recorded != derived:
                self.differences.append(
                    Difference(
                        account_id=account,
                        field=name,
                        where=where,
                        recorded=str(recorded),
                        derived=str(derived),
                    )
                )


def verify_reroutes(reroutes: Sequence[Read], compare: Comparison, reserve: list[str]) -> None:
    """Re-derive each reroute's sizes with the one sizing rule, from what its history recorded:
    the failed order's risk (itself compared with the re-derived plan's leg: what the reroute
    starts from is the plan's, not only what its input says), each target's snapshot and what
    each target filled; compare the orders and reservations it sent, and the risk it reports
    placed."""
    for read in reroutes:
        request, result = read.input, read.result
        if not isinstance(request, RerouteInput):
            continue
        wid = read.history.workflow_id
        leg = compare.leg(request.from_account, f"{wid} input", request.original_quantity)
        if leg is not None:
            compare.values(
                leg.account_id,
                f"{wid} input",
                (
                    ("original_quantity", request.original_quantity, leg.quantity),
                    ("original_risk", request.original_risk, leg.risk_amount),
                    ("candidates", request.candidates, reserve),
                ),
            )
        sizing = planning.RerouteSizing(
            original_risk=request.original_risk, fraction=request.execution.reroute_fraction
        )
        hops = result.hops if isinstance(result, RerouteResult) else []
        filled = {h.to_account: h.filled for h in hops}
        pending: tuple[Any, Any, planning.SizeDecision] | None = None
        for activity in read.activities:
            value = activity.result
            if isinstance(value, BookSnapshot):
                # The target's snapshot; since targets are checked for the failed leg's
                # currency, the failed leg's account comes with it.
                targets = [a for a in value.accounts if a.account_id != request.from_account]
                if len(targets) != 1:
                    continue
                account = targets[0]
                spec = value.specs.get(spec_key(account.broker, account.broker_symbol or ""))
                if spec is not None:
                    pending = (account, spec, sizing.size(request.signal, account, spec))
                continue
            order = activity.input
            if not isinstance(order, PlaceOrderRequest) or order.business_sequence != 1:
                continue
            if pending is None or pending[0].account_id != order.account_id:
                compare.values(
                    order.account_id,
                    f"{wid} order",
                    (("snapshot before the order", "none", "the target's snapshot"),),
                )
                continue
            account, spec, decision = pending
            pending = None
            risk, margin = planning.commitment(request.signal, spec, decision.lots)
            where = f"{wid} place_and_follow_order input"
            compare.values(order.account_id, where, (("quantity", order.quantity, decision.lots),))
            if order.reservation is not None:
                compare.values(
                    order.account_id,
                    f"{where} (reservation)",
                    (
                        ("risk_amount", order.reservation.risk_amount, risk),
                        ("margin", order.reservation.margin, margin),
                    ),
                )
            sizing.filled(request.signal, spec, decision, filled.get(order.account_id, Decimal(0)))
        if isinstance(result, RerouteResult):
            compare.values(
                request.from_account,
                f"{wid} result",
                (
                    ("risk_carried", result.risk_carried, planning.quantize(sizing.carried)),
                    ("risk_placed", result.risk_placed, planning.quantize(sizing.placed)),
                ),
            )


def verify_plan(
    root: Read,
    batches: Sequence[Read],
    report: SignalReport | None,
    reroutes: Sequence[Read] = (),
) -> tuple[ValueCheck, Plan | None]:
    """Re-derive the plan from the root history's recorded inputs and compare every value the
    histories recorded for it, and the report's lines (``report``: every line, a large
    signal's joined from its batches)."""
    recorded_version = root.rules_versions[0] if root.rules_versions else None
    check = ValueCheck(
        verdict=ValueVerdict.NOT_PLANNED,
        recorded_rules_version=recorded_version,
        current_rules_version=planning.RULES_VERSION,
    )
    snapshots = [a.result for a in root.activities if isinstance(a.result, BookSnapshot)]
    correlations = [a.result for a in root.activities if isinstance(a.result, CorrelationResult)]
    correlations += [s.correlation for s in snapshots if s.correlation is not None]
    # A large book was read in pages: the plan saw them joined, in page order.
    snapshot = paging.join_snapshot(sorted(snapshots, key=lambda p: p.page)) if snapshots else None
    correlation = (
        paging.join_correlation(sorted(correlations, key=lambda p: p.page))
        if correlations
        else None
    )
    request = root.input
    service = [a.result for a in root.activities if isinstance(a.result, ServiceSettings)]
    settings = (
        (request.settings or (service[0].plan if service else None))
        if isinstance(request, SignalWorkflowInput)
        else None
    )
    if (
        not isinstance(request, SignalWorkflowInput)
        or settings is None
        or snapshot is None
        or correlation is None
        or root.planned_at is None
    ):
        return check, None
    planned_at = root.planned_at
    if (recorded_version or 1) != planning.RULES_VERSION:
        return check.model_copy(
            update={"verdict": ValueVerdict.RULES_CHANGED, "planned_at": planned_at}
        ), None
    plan = planning.plan_signal(request.signal, snapshot, correlation, settings, planned_at)
    denials = {d.account_id: d for d in plan.denials}
    compare = Comparison({leg.account_id: leg for leg in plan.legs})

    def reservation(value: ReserveRiskRequest, where: str) -> None:
        leg = compare.leg(value.account_id, where, value.client_order_id)
        if leg is not None:
            compare.values(
                leg.account_id,
                where,
                (
                    ("quantity", value.quantity, leg.quantity),
                    ("client_order_id", value.client_order_id, leg.client_order_id),
                    ("risk_amount", value.risk_amount, leg.risk_amount),
                    ("margin", value.margin, leg.margin),
                ),
            )

    for read in [root, *batches]:
        wid = read.history.workflow_id
        for activity in read.activities:
            value = activity.input
            if isinstance(value, PlaceOrderRequest) and value.business_sequence == 1:
                where = f"{wid} place_and_follow_order input"
                leg = compare.leg(value.account_id, where, value.client_order_id)
                if leg is not None:
                    compare.values(
                        leg.account_id,
                        where,
                        (
                            ("quantity", value.quantity, leg.quantity),
                            ("client_order_id", value.client_order_id, leg.client_order_id),
                        ),
                    )
                if value.reservation is not None:  # reserved by the order activity itself
                    reservation(value.reservation, f"{where} (reservation)")
        for account, ms in read.delay_timers.items():
            where = f"{wid} delay timer"
            leg = compare.leg(account, where, f"{ms} ms")
            if leg is not None:
                compare.values(account, where, (("delay_ms", ms, leg.delay_ms),))
        for child_id, child_input in read.child_inputs.items():
            if not isinstance(child_input, LegBatchInput):
                continue
            for recorded in child_input.legs:
                where = f"{child_id} input"
                leg = compare.leg(recorded.account_id, where, recorded.client_order_id)
                if leg is not None:
                    # Batches get their legs without the rationale.
                    derived = leg.slim()
                    compare.values(
                        leg.account_id,
                        where,
                        (("planned leg", recorded.model_dump_json(), derived.model_dump_json()),),
                    )
    if report is not None:
        where = "execution report"
        for line in report.accounts:
            if line.rerouted_from is not None:
                continue  # sized by the reroute, not the plan
            denial = denials.get(line.account_id)
            if denial is not None:
                compare.values(denial.account_id, where, (("denial", line.denial, denial.reason),))
                continue
            leg = compare.leg(line.account_id, where, line.status)
            if leg is not None:
                compare.values(
                    leg.account_id,
                    where,
                    (
                        ("requested", line.requested, leg.quantity),
                        ("client_order_id", line.client_order_id, leg.client_order_id),
                        ("delay_ms", line.delay_ms, leg.delay_ms),
                    ),
                )
    verify_reroutes(reroutes, compare, plan.reserve)
    differences = compare.differences
    return (
        check.model_copy(
            update={
                "verdict": ValueVerdict.DRIFT if differences else ValueVerdict.MATCH,
                "planned_at": planned_at,
                "legs": len(plan.legs),
                "denials": len(plan.denials),
                "values_compared": compare.compared,
                "differences": differences,
            }
        ),
        plan,
    )


def account_audits(report: SignalReport, reads: Sequence[Read]) -> list[AccountAudit]:
    """Each report line beside the last known state of each of the account's orders."""
    orders: dict[str, OrderTrail] = {}
    owner: dict[str, str] = {}
    for read in reads:
        for activity in read.activities:
            value, result = activity.input, activity.result
            if isinstance(value, PlaceOrderRequest):
                owner[value.client_order_id] = value.account_id
                known = orders.get(value.client_order_id)
                orders[value.client_order_id] = order_state(
                    value.client_order_id, value.quantity, result, known
                )
            elif isinstance(value, CancelOrderRequest) and isinstance(result, OrderOutcome):
                known = orders.get(value.client_order_id)
                quantity = known.quantity if known else result.quantity
                owner.setdefault(value.client_order_id, value.account_id)
                orders[value.client_order_id] = order_state(
                    value.client_order_id, quantity, result, known
                )
    by_account: dict[str, list[OrderTrail]] = defaultdict(list)
    for coid, order in orders.items():
        by_account[owner[coid]].append(order)
    return [
        AccountAudit(
            account_id=line.account_id,
            status=line.status,
            requested=line.requested,
            filled=line.filled,
            filled_by_orders=sum((o.filled for o in by_account[line.account_id]), Decimal(0)),
            denial=line.denial,
            reason=line.reason,
            orders=by_account[line.account_id],
        )
        for line in report.accounts
    ]


def order_state(coid: str, quantity: Decimal, result: Any, known: OrderTrail | None) -> OrderTrail:
    if isinstance(result, OrderOutcome):
        return OrderTrail(
            client_order_id=coid,
            quantity=quantity,
            status=result.status,
            filled=result.filled_quantity,
            average_price=result.average_price,
        )
    if known is not None:
        return known
    return OrderTrail(
        client_order_id=coid, quantity=quantity, status=None, filled=Decimal(0), average_price=None
    )
