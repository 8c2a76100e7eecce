"""`anatomy check LOG --against DIR`: a live prompt log checked against what DIR deployed.

record.py     the deployment record: what a student run, an audit folder (or a specialise output) deployed
logdata.py    the log as traffic: distinct prompts, their requests, their days
tokenization.py  requests that tokenize differently under the deployed vocabulary, truncated, new tokens
knn.py        exact nearest neighbours by cosine (blocked numpy, or faiss when installed)
coverage.py   each log prompt's distance to the nearest training prompt in the teacher's space
quality.py    student against teacher on a sample of the log
periods.py    the same figures per day or week, and a drift figure
verdicts.py   ok / warn / fail per check, every threshold a named constant
check.py      the whole check into OUT (results/check.json, add_to_training.csv)
"""
