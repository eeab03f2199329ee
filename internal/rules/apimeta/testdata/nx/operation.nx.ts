/**
 * Operation details for TestApi
 */
export const OPERATION_DETAILS = {
  getTest: {
    path: '/test',
    method: 'GET',
  },
} as const;

/**
 * Type for all operation names as a string union
 */
export type Operations = keyof typeof OPERATION_DETAILS;
