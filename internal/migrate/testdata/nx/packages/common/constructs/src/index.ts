export * from './core/app.js';
export * from './app/apis/orders-api.js';
export * from './app/apis/billing-api.js';
