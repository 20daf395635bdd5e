"""The directory ``vmtop run`` puts on ``PYTHONPATH``: its ``sitecustomize`` starts an agent in
each child interpreter (see ``vmtop/agent/children.py``). A package only so that it ships."""
