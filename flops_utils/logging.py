"""`flops_utils.logging.logger`, as Oakestra FLOps repos import it."""

import logging

logger = logging.getLogger("flops_utils")
