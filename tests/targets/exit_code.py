import json
import sys

line = sys.stdin.readline().strip()
print(json.dumps({"argv": sys.argv, "stdin": line, "main": __name__}))
if len(sys.argv) > 1 and sys.argv[1] == "raise":
    raise RuntimeError("boom from the target")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
