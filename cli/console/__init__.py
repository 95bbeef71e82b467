"""`bulkhead ui`: the web console (an aiohttp server and the plain HTML/CSS/JS it serves).

server.py routes HTTP to backend.py, which asks the control plane through the CLI's own
connection code (cli/connect.py); flows.py follows the cluster's recent flows and turns
`observe`'s filters into requests; flowmap.py groups flows into the service map; verdicts.py
turns flows into traced connections and trace answers into the page's words; yamlpaths.py
finds an API path's line in YAML; errors.py is the one error of them all; static/ holds the
page, shipped as it is (no build step, nothing fetched at run time).
"""
