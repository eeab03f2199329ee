/** One operation of an API, as metadata.gen.ts lists them. */
export interface Operation {
  readonly path: string;
  readonly method: string;
}
