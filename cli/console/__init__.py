"""`bulkhead ui`: the web console (an aiohttp server and the plain HTML/CSS/JS it serves).

server.py routes HTTP to backend.py, which asks the control plane through the CLI's own
connection code (cli/connect.py); flowmap.py groups flows into the service map; static/ holds
the page, shipped as it is (no build step, nothing fetched at run time).
"""
