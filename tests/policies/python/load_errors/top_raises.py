# Raises while its top level runs.
import json

CONFIG = json.loads("{not json")
