import { createContext, useContext } from "react";
import type { Api } from "./api";
import type { ViewerQuery } from "./gql/graphql";

export type Viewer = ViewerQuery["viewer"];
export type Session = { api: Api; viewer: Viewer };

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (session === null) throw new Error("useSession outside a signed-in page");
  return session;
}

export function may(viewer: Viewer, permission: string): boolean {
  return viewer.permissions.includes(permission);
}
