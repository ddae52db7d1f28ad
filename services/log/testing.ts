// For the Log service's tests: the Deploy service's answer about a
// deployment's replicas, served by a small DeployService over an in-memory
// Connect transport (requests cross a real router, as they do in dev mode).

import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";

import { DeployService, ReplicaState } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";

/** A replica as the tests set it up. */
export interface FakeReplica {
  id: string;
  slot: string;
  revision: number;
  /** "" while pending (no job yet). */
  jobId: string;
}

/** GetDeployment over fixed replicas; a deployment not in `deployments` is NOT_FOUND, as Deploy answers. */
export class FakeDeploy {
  readonly deployments = new Map<string, FakeReplica[]>();
  /** Replicas that ended, newest first, by deployment: answered when GetDeployment asks for ended ones. */
  readonly ended = new Map<string, FakeReplica[]>();
  /** GetDeployment calls answered, for tests that wait for a follow to ask again. */
  calls = 0;
  readonly client: DroverClients["deploy"];

  constructor() {
    const self = this;
    this.client = createClient(
      DeployService,
      createRouterTransport((router) =>
        router.service(DeployService, {
          getDeployment(req) {
            self.calls++;
            const replicas = self.deployments.get(req.name);
            if (!replicas) throw new ConnectError(`deployment ${req.name} not found`, Code.NotFound);
            return {
              deployment: {
                name: req.name,
                replicas: replicas.map((r) => ({ ...r, state: r.jobId ? ReplicaState.RUNNING : ReplicaState.PENDING })),
              },
              endedReplicas: (self.ended.get(req.name) ?? []).slice(0, req.endedReplicas).map((r) => ({ ...r, state: ReplicaState.STOPPED })),
            };
          },
        }),
      ),
    );
  }
}
