"""daemon_churn.py's parts: the churn itself (churn.py), the measuring around it
(measure.py), reading what each tracer wrote (readers.py) and the table with its notes
(report.py)."""
