"""Suite-wide set-up."""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    # A shell starts a background job (`.ci/run &`) with SIGINT ignored, and an ignored signal
    # stays ignored across exec: every vmtop the tests start would then shrug off the Ctrl-C
    # that the Ctrl-C tests send. A handled signal is reset to the default at exec instead.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
