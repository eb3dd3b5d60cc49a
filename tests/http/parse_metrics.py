"""Parses a metrics exposition with prometheus_client's own parsers (for
tests/it/prometheus.rs): the text on stdin, the families as JSON on stdout. Text a parser
refuses is an exception and a non-zero exit.

    parse_metrics.py           the Prometheus text format (prometheus_client.parser)
    parse_metrics.py --openmetrics   OpenMetrics, strictly (prometheus_client.openmetrics)"""
import json
import sys

if sys.argv[1:] == ["--openmetrics"]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families

families = [
    {
        "name": family.name,
        "type": family.type,
        "samples": [
            {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
        ],
    }
    for family in text_string_to_metric_families(sys.stdin.read())
]
json.dump(families, sys.stdout)
