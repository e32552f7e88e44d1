"""NeuroFusion's federated training as a Flower App (deploy/flower): the ServerApp and ClientApp that a SuperLink
and one SuperNode per hospital run, built on neurofusion.federated."""
