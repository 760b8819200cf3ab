"""The applications' consumer groups in the dashboard (docs/groups.md): the groups page per
cluster, a group's page with its lag charts, what the overview shows of them."""
