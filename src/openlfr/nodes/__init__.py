"""Sites and nodes: the parts of openlfr that let one accountable centre run cameras on other
machines, over NATS JetStream (README "Sites and nodes").

- :mod:`openlfr.nodes.keys`: a node's key pair (Ed25519 to sign and to sign in to the broker as
  an nkey user, X25519 to receive galleries), the nkey text form, and sealing data to a node's
  public key (the broker never holds a readable template).
- :mod:`openlfr.nodes.broker`: the one module that speaks NATS (the ``nodes`` extra): the
  broker's authorisation file for the enrolled nodes, its reload, and the desired-state bucket
  and gallery object store of each node.
- :mod:`openlfr.nodes.enrol`: the node's side of enrolment (``openlfr node enroll``).
- :mod:`openlfr.nodes.agent` and :mod:`openlfr.nodes.noderun`: the running node (``openlfr
  node run``): its desired state reconciled with the centre's own reconcile module, leases,
  alerts and events through an outbox to the stream, health.

The centre's services that use them are in :mod:`openlfr.governance.nodes`. Nothing here is
needed on a single machine.
"""
