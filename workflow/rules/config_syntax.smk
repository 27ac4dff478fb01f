# Included before the Snakefile's `configfile:` directive: a YAML syntax error in config/config.yaml
# stops here as one line, "config/config.yaml:LINE:COLUMN: YAML syntax error: ...", where Snakemake's
# own loader would say only "Config file is not valid JSON or YAML". The check is impls.common.plan
# (tested); a config given with --configfile is read by Snakemake before this file runs.
import sys

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from impls.common.errors import SpecError
from impls.common.plan import check_yaml_syntax

try:
    check_yaml_syntax("config/config.yaml")
except SpecError as err:
    raise WorkflowError(str(err)) from None
