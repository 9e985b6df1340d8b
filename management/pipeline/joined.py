"""A running job's side of joined learners: keep its SuperLink's registered keys
in step with who joined the project and who was revoked.

Devices join through the API at any time (flops_management.enrolment), which
only writes the store; the job that owns the SuperLink reads it back here,
every `SYNC_S` while it runs, registers each new learner's key with the
SuperLink (the device learns so from its assignment and starts its SuperNode),
and unregisters a revoked learner's key, which the SuperLink refuses from its
next request on. Doing it from the job, not from the request, keeps every call
to a SuperLink in the process that started it.
"""

from __future__ import annotations

import logging
import time

from flops import events
from flops.errors import FlopsError
from flops.node_key import public_pem
from flops_management.models import Enrolment, utcnow
from flops_management.orchestrators.superlink_control import SuperLinkControl
from flops_management.pipeline.context import JobContext

logger = logging.getLogger(__name__)

SYNC_S = 1.0
# How often the SuperLink is asked which joined learners are online: their
# "last seen" (a device in an image reports to nobody else).
SEEN_S = 10.0
ONLINE = "online"  # Flower's node status while its heartbeats arrive


class JoinedLearners:
    def __init__(self, ctx: JobContext) -> None:
        assert ctx.deployment is not None
        self.ctx = ctx
        self.deployment = ctx.deployment
        self._next = 0.0
        self._next_seen = 0.0

    @property
    def wanted(self) -> bool:
        config = self.ctx.config
        return config is not None and config.joined_learners > 0

    def sync(self, force: bool = False) -> None:
        """Register the keys of learners that joined, unregister revoked ones."""
        now = time.monotonic()
        if not self.wanted or (not force and now < self._next):
            return
        self._next = now + SYNC_S
        enrolments = self.ctx.store.list_enrolments(self.ctx.project_id)
        to_register = [
            e
            for e in enrolments
            if e.learner and e.revoked_at is None and e.job_id != self.ctx.project_id
        ]
        to_cut = [
            e
            for e in enrolments
            if e.revoked_at is not None
            and e.node_id is not None
            and e.job_id == self.ctx.project_id
        ]
        registered = [e for e in enrolments if e.node_id is not None]
        see = bool(registered) and now >= self._next_seen
        if not to_register and not to_cut and not see:
            return
        with SuperLinkControl(
            self.deployment.control_address, self.deployment.root_certificates
        ) as control:
            for enrolment in to_register:
                assert enrolment.learner is not None and enrolment.public_key
                try:
                    node = control.register(
                        public_pem(enrolment.public_key), enrolment.learner
                    )
                except FlopsError as err:
                    # A key the SuperLink will not take (say, one it revoked
                    # before) is the device's problem, not the job's.
                    self.ctx.event(
                        events.WARNING,
                        learner=enrolment.learner,
                        message=f"{enrolment.learner}'s key was not registered: "
                        f"{err.message}",
                    )
                    self.ctx.store.update_enrolment(
                        enrolment.digest, job_id=self.ctx.project_id, node_id=None
                    )
                    continue
                self.ctx.store.update_enrolment(
                    enrolment.digest, job_id=self.ctx.project_id, node_id=node.node_id
                )
                # A new dict: `nodes` may still be the class's shared default.
                self.deployment.nodes = {
                    **self.deployment.nodes,
                    enrolment.learner: node.node_id,
                }
                self.ctx.log(f"{enrolment.learner} (joined) registered")
                self.ctx.event(
                    events.LEARNER_REGISTERED,
                    learner=enrolment.learner,
                    node_id=node.node_id,
                    address=enrolment.address,
                )
            for enrolment in to_cut:
                assert enrolment.node_id is not None
                control.unregister(enrolment.node_id)
                self.ctx.store.update_enrolment(enrolment.digest, node_id=None)
                self.deployment.nodes = {
                    name: node_id
                    for name, node_id in self.deployment.nodes.items()
                    if name != enrolment.learner
                }
                self.ctx.log(f"{enrolment.learner} (joined) unregistered: revoked")
            if see:
                self._next_seen = now + SEEN_S
                self._mark_seen(control, registered)

    def _mark_seen(
        self, control: SuperLinkControl, registered: list[Enrolment]
    ) -> None:
        online = {
            int(node["node_id"])
            for node in control.nodes()
            if node.get("status") == ONLINE and "node_id" in node
        }
        seen = utcnow()
        for enrolment in registered:
            if enrolment.node_id in online:
                self.ctx.store.update_enrolment(enrolment.digest, last_seen=seen)
