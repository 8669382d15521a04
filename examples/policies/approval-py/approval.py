"""Example trigger policy in Python: the approval policy of examples/policies/approval-trigger.

The built-in trigger decision (spec.md §2, policies/trigger-default) re-implemented, with a
gate in front: a run starts only once the QuarksJob carries the annotation
`quarks.cloudfoundry.org/approved: "true"`. Until then the decision is "no run" with reason
`NotApproved` and the strategy is left as it is, so a `once` or `now` QuarksJob runs as soon
as someone approves it.

It must decide exactly as the Rust version does: both pass
examples/policies/approval-trigger/cases.yaml, and host/tests/policies compares them on every
combination of the inputs the decision depends on.

Build (componentize-py, installed by scripts/lib/setup.sh `ensure_policy_tools`):

    componentize-py -d wit -w trigger componentize --stub-wasi \
        -p examples/policies/approval-py approval -o approval-py.wasm

`--stub-wasi` matters: without it the component imports WASI (environment, clocks, random,
stdio, filesystem, sockets) and reads its environment on the first call, which the operator's
sandbox refuses. With it the component imports nothing but the contract's types.
"""

from wit_world import exports
from wit_world.imports.trigger_types import TriggerDecision, TriggerInput
from wit_world.imports.types import Reason, Strategy

# The annotation that approves a QuarksJob's runs.
APPROVAL_ANNOTATION = "quarks.cloudfoundry.org/approved"


class TriggerPolicy(exports.TriggerPolicy):
    """The exported `trigger-policy` interface."""

    def decide(self, input: TriggerInput) -> TriggerDecision:
        return decide(input)


def decide(input: TriggerInput) -> TriggerDecision:
    """The built-in decision, held back while the QuarksJob is not approved."""
    decision = decide_builtin(input)
    if not decision.run or approved(input):
        return decision
    wanted = decision.reasons[0].message if decision.reasons else "a run is due"
    return no_run(
        Reason(
            "NotApproved",
            f"{wanted}; waiting for approval: annotate the QuarksJob with "
            f"{APPROVAL_ANNOTATION}=true",
        )
    )


def approved(input: TriggerInput) -> bool:
    return any(
        key == APPROVAL_ANNOTATION and value == "true"
        for key, value in input.quarks_job.annotations
    )


# --- The built-in decision (policies/trigger-default/src/lib.rs) ---------------------------
#
# | strategy | runs when                                                        | written back |
# |----------|------------------------------------------------------------------|--------------|
# | manual   | never by itself                                                  | nothing      |
# | now      | no run is active                                                 | manual       |
# | once     | no run is active                                                 | done         |
# | done     | updateOnConfigChange, both digests known and different, no run  | nothing      |
#
# Missing referenced config holds back any run (WaitingForConfig), then an active run does
# (RunActive). The event is never looked at.


class Run:
    """What the strategy alone asks for: a run, then `write_back` (None: leave it)."""

    def __init__(self, write_back, because: Reason):
        self.write_back = write_back
        self.because = because


def decide_builtin(input: TriggerInput) -> TriggerDecision:
    wanted = wanted_by_strategy(input)
    if isinstance(wanted, Reason):
        return no_run(wanted)
    because = wanted.because
    if input.missing_config:
        return no_run(
            Reason(
                "WaitingForConfig",
                f"{because.message}; waiting for referenced config that does not exist yet: "
                + ", ".join(input.missing_config),
            )
        )
    if input.run_active:
        return no_run(
            Reason(
                "RunActive",
                f"{because.message}; a run is still active, so this is decided again when "
                "it finishes",
            )
        )
    return TriggerDecision(run=True, write_strategy=wanted.write_back, reasons=[because])


def wanted_by_strategy(input: TriggerInput):
    """A `Run`, or the `Reason` why the strategy asks for none."""
    strategy = input.quarks_job.strategy
    if strategy == Strategy.MANUAL:
        return Reason("StrategyManual", "strategy is manual: runs only when set to now")
    if strategy == Strategy.NOW:
        return Run(
            Strategy.MANUAL,
            Reason("StrategyNow", "strategy is now: run, then reset the strategy to manual"),
        )
    if strategy == Strategy.ONCE:
        return Run(
            Strategy.DONE,
            Reason("StrategyOnce", "strategy is once: run, then set the strategy to done"),
        )
    return wanted_when_done(input)


def wanted_when_done(input: TriggerInput):
    if not input.quarks_job.update_on_config_change:
        return Reason(
            "StrategyDone",
            "strategy is done and updateOnConfigChange is false: does not run again",
        )
    last_run = input.config_digest_last_run
    if last_run is None:
        return Reason(
            "NoBaseline",
            "strategy is done but no previous run recorded a config digest to compare with",
        )
    now = input.config_digest_now
    if now is None:
        # A missing referenced object is the usual reason for an unknown digest: the run is
        # then held back by the WaitingForConfig gate, which names what is missing.
        if input.missing_config:
            return Run(
                None,
                Reason("ConfigChanged", "strategy is done and referenced config changed"),
            )
        return Reason(
            "ConfigDigestUnknown",
            "strategy is done but the digest of the referenced config is unknown",
        )
    if now == last_run:
        return Reason(
            "ConfigUnchanged",
            "strategy is done and referenced config is unchanged since the last run",
        )
    return Run(
        None,
        Reason(
            "ConfigChanged",
            "strategy is done, updateOnConfigChange is true and referenced config changed "
            "since the last run",
        ),
    )


def no_run(reason: Reason) -> TriggerDecision:
    return TriggerDecision(run=False, write_strategy=None, reasons=[reason])
