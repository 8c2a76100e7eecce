"""`anatomy specialise`: from a prompt log and a teacher to a deployable specialised student and its bill.

stages.py (cached, verified, atomically committed stages), plan.py (the config and the candidates),
data_stages.py / model_stages.py (the stage bodies over library functions), costing.py (the one call into
anatomy.cost), pipeline.py (the order), bill.py (the bill, recomputed from the stage outputs), recommend.py,
figure.py and render.py (bill.md, index.html, the Pareto figure).
"""
