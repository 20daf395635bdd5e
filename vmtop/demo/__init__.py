"""The bundled demo actor system that ``vmtop demo`` runs and monitors.

Run it alone with ``python -m vmtop.demo``; ``docs/demo.md`` says what each actor shows. This
package does not load the vmtop agent itself (the launcher does), except with ``--agent``.
"""

from __future__ import annotations

from vmtop.demo.system import DemoConfig, DemoSystem

__all__ = ["DemoConfig", "DemoSystem"]
