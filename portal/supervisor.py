"""The worker supervisor of ``portal serve --workers N``: uvicorn's, with a graceful stop that really
stops accepting.

uvicorn's supervisor binds the listening sockets and hands them to its workers. On SIGTERM each worker
closes its copy, but the supervisor kept its own until every worker had finished its calls in flight,
so the kernel went on accepting connections nobody would serve (a load balancer saw them hang, then
reset). Here the supervisor closes its copies first: once the workers close theirs, new connections
are refused at once and the load balancer sends them to another instance.
"""

from __future__ import annotations

from uvicorn.supervisors import Multiprocess

__all__ = ["Supervisor"]


class Supervisor(Multiprocess):
    """``uvicorn.supervisors.Multiprocess`` that closes its listening sockets before stopping workers."""

    def terminate_all(self) -> None:
        """Close the supervisor's listening sockets, then send SIGTERM to every worker."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()
