"""From finished runs to numbers and figures: import (results), statistics, aggregation,
figures, claims, validation verdicts, export. Import-free."""
