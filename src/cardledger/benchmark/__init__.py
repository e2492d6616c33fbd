"""The benchmark harness shipped with the package (`cardledger bench`, and everything in bench/).

`scenario` (the city), `workloads` (the SPEND/TOPUP mix, TigerBeetle's workload),
`baselines` (sqlite3 and py-lmdb ledgers doing the ledger's work) and `runner`
(each engine in a child process, checks, ratios, reports).
"""
