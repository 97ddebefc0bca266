/**
 * The Docker target's fence: a labelled volume named after the container, holding the token of the attempt allowed
 * to change it. A volume needs no image and is never mounted; its labels cannot change, so taking the fence over
 * replaces the volume, and the winner is whoever reads its own token back.
 */
import type Docker from 'dockerode';
import type { DockerTarget } from '../../domain/target.js';
import {
  decodeToken,
  encodeToken,
  type Fence,
  type FenceToken,
  sameToken,
  superseded,
  supersedes,
} from '../targets/attempt.js';
import { activeName, statusCode } from './engine.js';

const HOLDER_LABEL = 'deploy-agent.fence-holder';
const TAKE_ATTEMPTS = 5;

export const fenceName = (target: DockerTarget): string => `${activeName(target)}.fence`;

async function holderOf(docker: Docker, name: string): Promise<FenceToken | undefined> {
  try {
    const volume = (await docker.getVolume(name).inspect()) as { Labels?: Record<string, string> | null };
    return decodeToken(volume.Labels?.[HOLDER_LABEL]);
  } catch (error) {
    if (statusCode(error) === 404) return undefined;
    throw error;
  }
}

export function dockerFence(docker: Docker, target: DockerTarget, token: FenceToken): Fence {
  const name = fenceName(target);
  const where = `Docker container ${activeName(target)}`;
  return {
    async take() {
      for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        const holder = await holderOf(docker, name);
        if (holder && sameToken(holder, token)) return;
        if (holder && !supersedes(token, holder)) throw superseded(where, holder);
        await docker
          .getVolume(name)
          .remove()
          .catch((error: unknown) => {
            if (statusCode(error) !== 404) throw error;
          });
        // Creating a volume that exists returns the existing one: reading it back tells who won.
        await docker.createVolume({ Name: name, Labels: { [HOLDER_LABEL]: encodeToken(token) } });
      }
      throw superseded(where, await holderOf(docker, name));
    },
    async check() {
      const holder = await holderOf(docker, name);
      if (!holder || !sameToken(holder, token)) throw superseded(where, holder);
    },
  };
}
