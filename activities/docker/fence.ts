/**
 * The Docker target's fence: a labelled volume named after the live container, `<service>_<environment>.fence`,
 * holding the token of the attempt allowed to change it. A volume needs no image and is never mounted; its labels
 * cannot change, so taking the fence over replaces the volume, and the winner is whoever reads its own token back.
 *
 * Earlier releases kept the fence at `<service>-<environment>.fence`, after the legacy container name. Taking the
 * fence removes that volume, which stops an attempt of the earlier code at its next check; an attempt that finds it
 * there again stops itself, since an attempt of the earlier code took it over after it.
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
import { activeName, legacyName, statusCode } from './engine.js';

const HOLDER_LABEL = 'deploy-agent.fence-holder';
const TAKE_ATTEMPTS = 5;

export const fenceName = (target: Pick<DockerTarget, 'service' | 'environment'>): string =>
  `${activeName(target)}.fence`;
export const legacyFenceName = (target: Pick<DockerTarget, 'service' | 'environment'>): string =>
  `${legacyName(target)}.fence`;

/** The volume's holder label, `null` when there is no such volume. */
async function labelOf(docker: Docker, name: string): Promise<string | undefined | null> {
  try {
    const volume = (await docker.getVolume(name).inspect()) as { Labels?: Record<string, string> | null };
    return volume.Labels?.[HOLDER_LABEL];
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
}

async function holderOf(docker: Docker, name: string): Promise<FenceToken | undefined> {
  return decodeToken((await labelOf(docker, name)) ?? undefined);
}

async function removeVolume(docker: Docker, name: string): Promise<void> {
  await docker
    .getVolume(name)
    .remove()
    .catch((error: unknown) => {
      if (statusCode(error) !== 404) throw error;
    });
}

export function dockerFence(docker: Docker, target: DockerTarget, token: FenceToken): Fence {
  const name = fenceName(target);
  const legacy = legacyFenceName(target);
  const where = `Docker container ${activeName(target)}`;
  return {
    async take() {
      for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        const holder = await holderOf(docker, name);
        if (holder && sameToken(holder, token)) {
          await removeVolume(docker, legacy);
          return;
        }
        if (holder && !supersedes(token, holder)) throw superseded(where, holder);
        await removeVolume(docker, name);
        // Creating a volume that exists returns the existing one: reading it back tells who won.
        await docker.createVolume({ Name: name, Labels: { [HOLDER_LABEL]: encodeToken(token) } });
      }
      throw superseded(where, await holderOf(docker, name));
    },
    async check() {
      const holder = await holderOf(docker, name);
      if (!holder || !sameToken(holder, token)) throw superseded(where, holder);
      const legacyHolder = await labelOf(docker, legacy);
      if (legacyHolder !== null) throw superseded(`${where} (legacy fence ${legacy})`, decodeToken(legacyHolder));
    },
  };
}
